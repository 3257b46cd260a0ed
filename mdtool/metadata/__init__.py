"""The Nova-compatible metadata service: pure tree logic (tree, service) apart from the daemon."""
