module github.com/redpipe/redpipe

go 1.26
