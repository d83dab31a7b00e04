"""Media: object storage (a local directory or S3), input images (URL safety, fetching, sniffing), uploads."""
