//! S3 replies as servers write them, shared by the parsers' tests: the S3 API reference's
//! examples, and what moto, MinIO, Ceph and Garage were measured or documented to send.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `secs` seconds and `millis` milliseconds after the epoch.
pub(crate) fn at(secs: u64, millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
}

// ListObjectsV2 example of the S3 API reference (with a delimiter).
pub(crate) const LIST_COMMON_PREFIXES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>example-bucket</Name>
  <Prefix>photos/2006/</Prefix>
  <KeyCount>3</KeyCount>
  <MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter>
  <IsTruncated>false</IsTruncated>
  <Contents>
    <Key>photos/2006/index.html</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>"fba9dede5f27731c9771645a39863328"</ETag>
    <Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <CommonPrefixes>
    <Prefix>photos/2006/February/</Prefix>
  </CommonPrefixes>
  <CommonPrefixes>
    <Prefix>photos/2006/January/</Prefix>
  </CommonPrefixes>
</ListBucketResult>"#;

// Truncated page, as in the "list with continuation token" example.
pub(crate) const LIST_TRUNCATED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name>
  <Prefix/>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <KeyCount>2</KeyCount>
  <MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents>
    <Key>happyface.jpg</Key>
    <LastModified>2014-11-21T19:40:05.000Z</LastModified>
    <ETag>&quot;70ee1738b6b21e2c8a43f3a5ab0eee71&quot;</ETag>
    <Size>11</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>happyface.jpg</Key>
    <LastModified>2014-11-21T19:40:05.000Z</LastModified>
    <ETag>"becf17f89c30367a9a44495d62ed521a-1"</ETag>
    <Size>1111</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
</ListBucketResult>"#;

// EncodingType=url: S3 form-encodes keys (space as '+', '+' as %2B).
pub(crate) const LIST_URL_ENCODED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>dir%2F</Prefix><ContinuationToken>tok</ContinuationToken><KeyCount>5</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>%2F</Delimiter><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>dir/my+file.txt</Key><LastModified>2024-01-02T03:04:05Z</LastModified><ETag>"a"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>dir/a%2Bb%25c</Key><LastModified>2024-01-02T03:04:05.123Z</LastModified><ETag>"b"</ETag><Size>2</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>dir/caf%C3%A9%20%E2%9C%93</Key><LastModified>garbage</LastModified><Size>3</Size></Contents><Contents><Key>dir/bad%FF%FE</Key><Size>4</Size></Contents><Contents><Key>dir/tab%09%0D</Key><Size>5</Size></Contents><CommonPrefixes><Prefix>dir/sub+dir%2F/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>dir/%C0/</Prefix></CommonPrefixes></ListBucketResult>"#;

pub(crate) const LIST_EMPTY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>empty-bucket</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"#;

pub(crate) const ERR_NO_SUCH_KEY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>NoSuchKey</Code>
  <Message>The resource you requested does not exist</Message>
  <Resource>/mybucket/myfoto.jpg</Resource>
  <RequestId>4442587FB7D0A2F9</RequestId>
</Error>"#;

pub(crate) const ERR_NO_SUCH_BUCKET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>nope</BucketName><RequestId>TX4Y5Z6</RequestId><HostId>a2V5</HostId></Error>"#;

pub(crate) const ERR_SIGNATURE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message><AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256
20130524T000000Z
20130524/us-east-1/s3/aws4_request
7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972</StringToSign><SignatureProvided>f0e8</SignatureProvided><CanonicalRequest>GET
/test.txt
</CanonicalRequest><RequestId>85A6B4C1</RequestId><HostId>eHk=</HostId></Error>"#;

pub(crate) const ERR_ACCESS_DENIED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>656c76696e6727732072657175657374</RequestId><HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>"#;

pub(crate) const INITIATE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket>
  <Key>example-object</Key>
  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>"#;

pub(crate) const COMPLETE_OK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Location>http://Example-Bucket.s3.us-east-1.amazonaws.com/Example-Object</Location>
  <Bucket>Example-Bucket</Bucket>
  <Key>Example-Object</Key>
  <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag>
</CompleteMultipartUploadResult>"#;

// The "200 OK with an error" example: keep-alive whitespace, then the error document.
pub(crate) const COMPLETE_200_ERROR: &str = "    \n      \n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>InternalError</Code>\n  <Message>We encountered an internal error. Please try again.</Message>\n  <RequestId>656c76696e6727732072657175657374</RequestId>\n  <HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>\n</Error>";

pub(crate) const COPY_OBJECT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CopyObjectResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
   <LastModified>2009-10-28T22:32:00</LastModified>
   <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
</CopyObjectResult>"#;

pub(crate) const COPY_PART: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CopyPartResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
   <LastModified>2009-10-28T22:32:00.000Z</LastModified>
   <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
</CopyPartResult>"#;

/// GetObjectTagging, as the S3 API reference shows it.
pub(crate) const TAGGING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <TagSet>
     <Tag>
       <Key>tag1</Key>
       <Value>val1</Value>
     </Tag>
     <Tag>
       <Key>tag2</Key>
       <Value>val2 &amp; more</Value>
     </Tag>
  </TagSet>
</Tagging>"#;

pub(crate) const DELETE_RESULT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted>
    <Key>sample1.txt</Key>
  </Deleted>
  <Error>
    <Key>sample2.txt</Key>
    <Code>AccessDenied</Code>
    <Message>Access Denied</Message>
  </Error>
</DeleteResult>"#;

// ListMultipartUploads example of the S3 API reference (trimmed: two uploads).
pub(crate) const LIST_UPLOADS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>bucket</Bucket>
  <KeyMarker></KeyMarker>
  <UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>my-movie.m2ts</NextKeyMarker>
  <NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</NextUploadIdMarker>
  <MaxUploads>3</MaxUploads>
  <IsTruncated>true</IsTruncated>
  <Upload>
    <Key>my-divisor</Key>
    <UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
    <Initiator>
      <ID>arn:aws:iam::111122223333:user/user1-11111a31-17b5-4fb7-9df5-b111111f13de</ID>
      <DisplayName>user1-11111a31-17b5-4fb7-9df5-b111111f13de</DisplayName>
    </Initiator>
    <Owner>
      <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
      <DisplayName>OwnerDisplayName</DisplayName>
    </Owner>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2010-11-10T20:48:33.000Z</Initiated>
  </Upload>
  <Upload>
    <Key>my-movie.m2ts</Key>
    <UploadId>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</UploadId>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2010-11-10T20:48:34Z</Initiated>
  </Upload>
</ListMultipartUploadsResult>"#;

// The same with EncodingType=url, as moto and S3 answer `encoding-type=url`.
pub(crate) const LIST_UPLOADS_URL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>bucket</Bucket>
  <EncodingType>url</EncodingType>
  <IsTruncated>false</IsTruncated>
  <Upload>
    <Key>dir/a+b%2Bc.txt</Key>
    <UploadId>abc</UploadId>
    <Initiated>not a date</Initiated>
  </Upload>
  <Upload>
    <Key>%FF</Key>
    <UploadId>def</UploadId>
  </Upload>
</ListMultipartUploadsResult>"#;

// ListParts example of the S3 API reference (trimmed).
pub(crate) const LIST_PARTS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket>
  <Key>example-object</Key>
  <UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA</UploadId>
  <PartNumberMarker>1</PartNumberMarker>
  <NextPartNumberMarker>3</NextPartNumberMarker>
  <MaxParts>2</MaxParts>
  <IsTruncated>true</IsTruncated>
  <Part>
    <PartNumber>2</PartNumber>
    <LastModified>2010-11-10T20:48:34.000Z</LastModified>
    <ETag>"7778aef83f66abc1fa1e8477f296d394"</ETag>
    <Size>10485760</Size>
  </Part>
  <Part>
    <PartNumber>3</PartNumber>
    <LastModified>2010-11-10T20:48:33.000Z</LastModified>
    <ETag>"aaaa18db4cc2f85cedef654fccc4a4x8"</ETag>
    <Size>10485760</Size>
  </Part>
</ListPartsResult>"#;

// moto 5.2.1's reply (measured: `moto_server` 5.2.1, one part of "hello").
pub(crate) const COMPLETE_MOTO_521: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<CompleteMultipartUploadResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://bucket1.s3.amazonaws.com/k3</Location><Bucket>bucket1</Bucket><Key>k3</Key><ETag>"62109206880d38a4010a98e11243924a-1"</ETag></CompleteMultipartUploadResponse>"#;

// MinIO style: Go's encoder writes the quotes as `&#34;`, and checksum elements follow.
pub(crate) const COMPLETE_MINIO_STYLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://127.0.0.1:9000/bucket/key</Location><Bucket>bucket</Bucket><Key>key</Key><ETag>&#34;3858f62230ac3c915f300c664312c11f-9&#34;</ETag><ChecksumCRC32C>nFp5yA==</ChecksumCRC32C><ChecksumType>COMPOSITE</ChecksumType></CompleteMultipartUploadResult>"#;

// Ceph RGW style: no XML declaration, an unquoted ETag.
pub(crate) const COMPLETE_CEPH_STYLE: &str = r#"<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>bucket.example.com/key</Location><Bucket>bucket</Bucket><Key>key</Key><ETag>3858f62230ac3c915f300c664312c11f-9</ETag></CompleteMultipartUploadResult>"#;

// Garage style: a namespace prefix, the quotes escaped as `&quot;`, an unknown element.
pub(crate) const COMPLETE_PREFIXED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<s3:CompleteMultipartUploadResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:Location>/bucket/key</s3:Location><s3:Bucket>bucket</s3:Bucket><s3:Key>key</s3:Key><s3:ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</s3:ETag><s3:VersionId>v1</s3:VersionId></s3:CompleteMultipartUploadResult>"#;

// No namespace, a BOM, keep-alive whitespace, and the query protocol's wrapper.
pub(crate) const COMPLETE_WRAPPED: &str = "\u{FEFF}  \n<CompleteMultipartUploadResponse><CompleteMultipartUploadResult><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag></CompleteMultipartUploadResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></CompleteMultipartUploadResponse>";

/// Every reply above (the fuzz test mutates them).
pub(crate) const ALL_DOCS: &[&str] = &[
    LIST_COMMON_PREFIXES,
    LIST_TRUNCATED,
    LIST_URL_ENCODED,
    LIST_EMPTY,
    ERR_NO_SUCH_KEY,
    ERR_NO_SUCH_BUCKET,
    ERR_SIGNATURE,
    ERR_ACCESS_DENIED,
    INITIATE,
    COMPLETE_OK,
    COMPLETE_200_ERROR,
    COPY_OBJECT,
    COPY_PART,
    TAGGING,
    DELETE_RESULT,
    LIST_UPLOADS,
    LIST_UPLOADS_URL,
    LIST_PARTS,
    COMPLETE_MOTO_521,
    COMPLETE_MINIO_STYLE,
    COMPLETE_CEPH_STYLE,
    COMPLETE_PREFIXED,
    COMPLETE_WRAPPED,
];
