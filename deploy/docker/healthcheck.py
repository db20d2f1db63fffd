"""Container health check: exit 0 when the URL answers 2xx within 3 s, 1 otherwise.

    python healthcheck.py [URL]      (default: $HEALTHCHECK_URL)

The slim Python images have no curl or wget; the interpreter is already there.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HEALTHCHECK_URL", "")
    if not url:
        print("healthcheck: no URL (argument or HEALTHCHECK_URL)", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return 0 if 200 <= answer.status < 300 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"healthcheck: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
