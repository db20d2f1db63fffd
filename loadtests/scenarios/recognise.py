"""Recognition only (the report's traffic): ``-u`` users, ``-t`` run time.

``FACEREC_LOAD_BODY=raw`` sends each image as the whole body (``image/jpeg``) instead of
a multipart form, the default (:func:`loadtests.users.image_body`).
"""

from loadtests.users import RecogniseUser

__all__ = ["RecogniseUser"]
