"""dispatch: delivers email, SMS, CRM tasks and webhooks exactly once, with templates, tracking
links and outcome events. See service_layer/handlers.py for how a message goes from command to
provider."""
