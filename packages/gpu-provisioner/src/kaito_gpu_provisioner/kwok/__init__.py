"""The KWOK provider: NodeClaims served by fake nodes on a KWOK-enabled cluster."""
