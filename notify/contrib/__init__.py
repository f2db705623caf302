"""Optional integrations with other libraries; each module imports its library, so import only what you use."""
