"""A real node beside the local control plane: containerd + runc, kubelet,
kube-proxy, CNI bridge, cluster DNS and a NetworkPolicy enforcer.

Each room has a file of its own: ``tools`` builds the Go programs, ``hoststate``
records and restores what the node changes on the host, ``network`` is how a
pod gets an IP, ``runtime`` is containerd, ``agent`` is the kubelet,
``services`` is kube-proxy and DNS, ``policy`` is the enforcer (kube-router),
``storage`` provisions volumes, ``scratch_image`` makes single-binary images, and
``realnode`` puts them together.
"""
