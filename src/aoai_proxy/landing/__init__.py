"""The usage landing: a second function that reads the usage hub and lands its events in Log Analytics."""
