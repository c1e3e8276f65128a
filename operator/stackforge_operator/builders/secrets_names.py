"""Names and keys of the generated credentials Secrets, shared by builders.

The values themselves are generated once by :mod:`stackforge_operator.builders.credentials`
and never put in a manifest a builder returns for anything but the Secret itself.
"""

POSTGRES_SECRET = "postgres-credentials"
POSTGRES_USER_KEY = "username"
POSTGRES_PASSWORD_KEY = "password"
POSTGRES_SUPERUSER_PASSWORD_KEY = "superuser-password"
POSTGRES_REPLICATION_PASSWORD_KEY = "replication-password"
# The application user's name is fixed: apps and the pooler find it here.
POSTGRES_APP_USER = "app"

REDIS_SECRET = "redis-credentials"
REDIS_PASSWORD_KEY = "password"

CONSUL_SECRET = "consul-gossip"
CONSUL_GOSSIP_KEY = "key"

# Each admin account's generated password: Secret admin-<username> (models.tenant
# admin_secret_name), with these keys.
ADMIN_USERNAME_KEY = "username"
ADMIN_PASSWORD_KEY = "password"
# Every admin account with its role and password, for the PostgreSQL primary's
# upkeep sidecar, which reads it from a Secret volume (refreshed without a restart).
POSTGRES_ADMIN_ROLES_SECRET = "postgres-admin-roles"
POSTGRES_ADMIN_ROLES_KEY = "accounts.json"
