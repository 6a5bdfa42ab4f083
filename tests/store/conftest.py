"""The store's tests run against a real S3 endpoint (moto's server mode)."""

from s3_server import s3_bucket, s3_server  # noqa: F401  (fixtures)
