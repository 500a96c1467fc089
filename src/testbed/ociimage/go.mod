module github.com/vault-kms-plugin/vault-kms-plugin/testbed/ociimage

go 1.26
