"""Test support shipped with the package: tiny randomly initialised models built offline."""
