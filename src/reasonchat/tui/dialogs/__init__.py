"""Modal dialogs: context overflow, errors, generation settings."""
