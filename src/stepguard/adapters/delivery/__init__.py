"""Delivery adapters: email over SMTP, SMS over a Twilio-compatible API or a webhook, and a
console/file sender for development only. They implement ``EmailSender`` / ``SmsSender``."""

from stepguard.adapters.delivery.console import ConsoleSender
from stepguard.adapters.delivery.render import Renderer
from stepguard.adapters.delivery.sms import TwilioSmsSender, WebhookSmsSender, parse_body_template
from stepguard.adapters.delivery.smtp import SmtpEmailSender, SmtpSecurity

__all__ = [
    "ConsoleSender",
    "Renderer",
    "SmtpEmailSender",
    "SmtpSecurity",
    "TwilioSmsSender",
    "WebhookSmsSender",
    "parse_body_template",
]
