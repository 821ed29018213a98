import uuid

from django.db import models
from django.utils import timezone


class Site(models.Model):
    STATUS_CHOICES = [("up", "up"), ("down", "down"), ("degraded", "degraded")]

    # The client chooses the slug: it is the resource's address.
    slug = models.SlugField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=500)
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default="up")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]


class Metric(models.Model):
    # The client chooses the id (so that a retried POST cannot duplicate a
    # metric); one is generated when it gives none.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    site = models.ForeignKey(Site, related_name="metrics", on_delete=models.CASCADE)
    name = models.CharField(max_length=100)
    value = models.FloatField()
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["recorded_at", "id"]


class IdempotencyKey(models.Model):
    """A request that carried an Idempotency-Key, and the answer it got.

    restspy's replicator sends Idempotency-Key: <message id> with every write
    it applies. A replicator killed after the app committed a write but
    before restspy's ledger did will apply that message again; the app
    recognizes the key and answers the stored response instead of writing
    twice. The key row commits in the same transaction as the write."""

    key = models.CharField(primary_key=True, max_length=200)
    method = models.CharField(max_length=16)
    path = models.CharField(max_length=2000)
    status = models.IntegerField()
    content_type = models.CharField(max_length=200, blank=True, default="")
    body = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
