"""The gallery kept consistent: enrolment, index sync with the database, rollouts, the live view."""
