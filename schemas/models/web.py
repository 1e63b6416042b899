"""Models for web.* event data (mirror data/web.*.schema.json)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic import StringConstraints as S

from schemas.models.base import (
    ContentStage,
    ContentTopics,
    Identifier,
    NonNegativeInt,
    OpenEventData,
    Text,
    Url,
    Utm,
)

FormType = Literal[
    "contact", "demo_request", "trial_signup", "newsletter", "content_gate",
    "webinar_registration", "other",
]  # fmt: skip
ContentType = Literal["whitepaper", "ebook", "case_study", "report", "datasheet", "other"]
FormFields = Annotated[dict[str, Annotated[str, S(max_length=5000)]], Field(max_length=100)]


class PageViewed(OpenEventData):
    """web.page_viewed: the lead viewed a page; extra page properties are kept."""

    url: Url
    path: Annotated[str, S(max_length=2048)] | None = None
    search: Annotated[str, S(max_length=2048)] | None = None
    title: Text | None = None
    referrer: Annotated[str, S(max_length=2048)] | None = None
    utm: Utm | None = None
    content_topics: ContentTopics | None = None
    content_stage: ContentStage | None = None
    anonymous_id: Identifier | None = None


class FormSubmitted(OpenEventData):
    """web.form_submitted: the lead submitted a form."""

    form_id: Identifier
    form_type: FormType | None = None
    page_url: Url | None = None
    fields: FormFields | None = None


class ContentDownloaded(OpenEventData):
    """web.content_downloaded: the lead downloaded a content asset."""

    content_id: Identifier
    title: Text | None = None
    content_type: ContentType | None = None
    content_topics: ContentTopics | None = None
    content_stage: ContentStage | None = None


class WebinarRegistered(OpenEventData):
    """web.webinar_registered: the lead registered for a webinar."""

    webinar_id: Identifier
    title: Text | None = None
    content_topics: ContentTopics | None = None


class WebinarAttended(OpenEventData):
    """web.webinar_attended: the lead attended a webinar."""

    webinar_id: Identifier
    title: Text | None = None
    duration_seconds: NonNegativeInt | None = None
    attended_seconds: NonNegativeInt | None = None
    content_topics: ContentTopics | None = None
