"""The Azure provider: one AKS agent pool per NodeClaim, through azure-mgmt-containerservice.

Only this subpackage imports ``azure.*`` (install the ``azure`` extra).
"""
