"""The node agent: the host side of the ``local`` provider (a small local "cloud").

It runs on the machine that hosts the local cluster (``hack/local-cluster.sh`` starts it, as
root), serves an HTTP API for machines (:mod:`.server`), keeps a record of them
(:mod:`.agent`), and makes each one a real node: a network namespace with containerd, a kubelet
and kube-proxy (:mod:`.plan` for the layout, :mod:`.runtime` for the I/O). Nothing here runs
inside the gpu-provisioner image; it ships there only because the wire model is shared.
"""
