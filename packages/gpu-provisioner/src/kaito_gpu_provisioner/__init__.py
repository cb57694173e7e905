"""A Karpenter-compatible NodeClaim provisioner for AKS and KWOK."""

__version__ = "0.1.0"
