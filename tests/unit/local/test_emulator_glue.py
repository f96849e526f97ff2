"""A crawl of the emulated Glue finishes, so the next StartCrawler (the next batch run's) succeeds."""

from __future__ import annotations

import boto3
from moto import mock_aws

from local.emulator.glue import install


def test_a_crawler_can_be_started_again_after_its_crawl():
    install()
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "analytics"})
        glue.create_crawler(
            Name="batch-outputs",
            Role="arn:aws:iam::123456789012:role/crawler",
            DatabaseName="analytics",
            Targets={"S3Targets": [{"Path": "s3://results/batch/output/"}]},
        )
        glue.start_crawler(Name="batch-outputs")
        glue.start_crawler(Name="batch-outputs")
        assert glue.get_crawler(Name="batch-outputs")["Crawler"]["LastCrawl"]["Status"] != "RUNNING"
