"""What the app tells its operators: metrics on the vendor-neutral OpenTelemetry API."""
