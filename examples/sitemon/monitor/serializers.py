from collections import OrderedDict

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from .models import Metric, Site


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["slug", "name", "url", "status", "updated_at"]
        read_only_fields = ["updated_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not settings.SITEMON_VARIANT:
            return data
        # The variant build (settings.SITEMON_VARIANT): what clients read
        # changes, what they send does not ("url" is still the input field),
        # so recorded writes replay unchanged and only the answers differ.
        out = OrderedDict()
        for k, v in data.items():
            out["address" if k == "url" else k] = v
        out["generated_at"] = timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return out


class SiteUpdateSerializer(SiteSerializer):
    """PUT/PATCH: the slug is the address and cannot change."""

    class Meta(SiteSerializer.Meta):
        read_only_fields = ["slug", "updated_at"]


class MetricSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(required=False)
    site = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Metric
        fields = ["id", "site", "name", "value", "recorded_at"]

    def validate_id(self, value):
        if self.instance is None and Metric.objects.filter(pk=value).exists():
            raise serializers.ValidationError("a metric with this id already exists")
        return value


class MetricUpdateSerializer(MetricSerializer):
    id = serializers.UUIDField(read_only=True)
