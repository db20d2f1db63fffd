"""``python -m search_service --port P --data-dir D [--shard I/N]``."""

from search_service.server import main

if __name__ == "__main__":
    main()
