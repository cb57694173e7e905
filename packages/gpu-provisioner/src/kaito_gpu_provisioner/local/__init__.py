"""The ``local`` provider: NodeClaims become real nodes (kubelet, containerd, kube-proxy) on this
machine, through the node agent of ``hack/local-cluster.sh`` (:mod:`.host`). The provider talks
to the agent only through the wire model in :mod:`.machines`, as a cloud provider talks to its
cloud's API."""
