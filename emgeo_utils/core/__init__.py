"""Shared ground floor: paths, the artifact cache, seeding, side-by-side jobs, statistics, input readers, atomic writes."""
