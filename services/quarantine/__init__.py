"""The quarantine service: cases, daily check-ins, seals and screening rounds."""
