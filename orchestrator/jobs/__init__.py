"""Jobs: large batches queued by the API and done by ``facerec worker`` processes on Celery."""
