"""The reference order -> billing -> notification system under test."""
