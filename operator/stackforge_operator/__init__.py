"""StackForge operator: provisions, backs up, drills and scales tenant stacks on Kubernetes."""

API_GROUP = "stackforge.io"
API_VERSION = "v1alpha1"
FIELD_MANAGER = "stackforge-operator"

__all__ = ["API_GROUP", "API_VERSION", "FIELD_MANAGER"]
