"""The test world: real disks, a real registry, real signed OS images, for tests and the demo."""
