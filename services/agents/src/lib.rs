//! The agents service (being built; see issue #4).
