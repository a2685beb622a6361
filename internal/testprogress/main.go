// Command testprogress turns `go test -json` on stdin into the log a person
// or CI wants while a long run goes on. It prints, as they happen:
//
//   - go test's own result line for each package (ok, FAIL, ?) when the
//     package finishes, rather than in package order;
//   - what a package's TestMain prints, and the progress lines its tests
//     print: lines starting with the package name and a colon, such as
//     "e2e: installing Dendrite ..." written to stdout or stderr;
//   - the output of every failed test;
//   - a line naming what is still building or running after a minute in
//     which nothing was printed.
//
// It ends with a line counting packages passed and failed, and exits 1 if
// any package failed.
//
//	go test -json ./... | go run ./internal/testprogress
package main

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

// quietFor is how long the log may stay silent before a still-running line.
const quietFor = time.Minute

func main() {
	p := newProgress(os.Stdout, time.Now)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintln(os.Stderr, "testprogress: reading go test output:", err)
		}
		close(lines)
	}()
	tick := time.NewTicker(quietFor / 4)
	defer tick.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if !p.finish() {
					os.Exit(1)
				}
				return
			}
			p.line(line)
		case <-tick.C:
			p.idle(quietFor)
		}
	}
}
