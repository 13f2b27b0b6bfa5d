"""Helpers shared by the test suites: real loopback servers and their control clients."""
