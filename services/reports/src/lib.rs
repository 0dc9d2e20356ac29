//! The reports service (being built; see issue #5).
