"""Messages beyond the browser: channels (email, Slack, webhooks), the outbox and the
leader's sender (issue 15). Producers call ``outbox.enqueue`` in their own transaction."""
