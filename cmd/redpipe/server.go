package main

import "github.com/redpipe/redpipe/redistest"

// serverURL returns the server a subcommand runs against: rawURL when the
// user gave one, or a throwaway redis-server started now. stop ends the
// throwaway server and does nothing for the user's; throwaway tells which.
func serverURL(rawURL string) (url string, throwaway bool, stop func() error, err error) {
	if rawURL != "" {
		return rawURL, false, func() error { return nil }, nil
	}
	srv, err := redistest.StartServer()
	if err != nil {
		return "", false, nil, err
	}
	return srv.URL(), true, srv.Stop, nil
}
