"""Scenarios the bench scripts drive with the test harness's real servers (not tests: no assertions on time)."""
