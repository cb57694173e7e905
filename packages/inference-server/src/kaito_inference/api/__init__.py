"""HTTP routes, one module per endpoint family, plus the shared serving helpers."""
