//! Config tests for the alerting sections.
