"""The face models: where they come from, how they are made batchable, how Triton serves them."""
