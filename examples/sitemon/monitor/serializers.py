from rest_framework import serializers

from .models import Metric, Site


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["slug", "name", "url", "status", "updated_at"]
        read_only_fields = ["updated_at"]


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
