package main

import (
	_ "github.com/redis/go-redis/v9"
	_ "github.com/redis/rueidis"
	_ "github.com/redpipe/redpipe"
)

func main() {}
