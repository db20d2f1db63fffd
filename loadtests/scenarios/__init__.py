"""One Locust file per scenario: ``locust -f loadtests/scenarios/<name>.py``."""
