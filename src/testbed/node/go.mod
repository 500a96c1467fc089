module github.com/vault-kms-plugin/vault-kms-plugin/testbed/node

go 1.26.0
