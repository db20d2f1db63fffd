"""The ``facerec`` command line: the parser in :mod:`.main`, one module of handlers per concern."""
