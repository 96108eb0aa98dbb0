"""Apps that know nothing of logprobscope, run under `opentelemetry-instrument` by the tests."""
