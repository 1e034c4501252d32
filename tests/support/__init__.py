"""Test support shared across test folders: the emulated phone and a private adb server."""
