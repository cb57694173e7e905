"""The validating admission webhook: certificates, their rotation, and the webhook config."""
