"""What the service measures about itself: per-minute request statistics and the host it runs on."""
