"""States of a recorded pair of Patients in duplicate review."""

#: open: to review; not-duplicate: a reviewer said "not the same person" (never offered again);
#: merged: merged by Patient/$merge
PAIR_STATUSES = ("open", "not-duplicate", "merged")
