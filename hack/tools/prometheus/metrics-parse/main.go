// metrics-parse reads a metrics exposition on stdin and parses it with the parser Prometheus
// itself uses when scraping, chosen by the Content-Type given as the only argument. It prints
// every sample as a JSON line {"name", "labels", "value", "exemplar"?} and exits 1 at the first parse error,
// so tests judge the operator's /metrics by Prometheus's rules, not by a regular expression.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

type sample struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Value    float64           `json:"value"`
	Exemplar *sampleExemplar   `json:"exemplar,omitempty"`
}

type sampleExemplar struct {
	Labels map[string]string `json:"labels"`
	Value  float64           `json:"value"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: metrics-parse CONTENT-TYPE < exposition")
		os.Exit(2)
	}
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	parser, err := textparse.New(body, os.Args[1], labels.NewSymbolTable(), textparse.ParserOptions{})
	if parser == nil {
		fail(fmt.Errorf("no parser for content type %q: %w", os.Args[1], err))
	}
	if err != nil {
		fail(fmt.Errorf("content type %q: %w", os.Args[1], err))
	}
	out := json.NewEncoder(os.Stdout)
	for {
		entry, err := parser.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fail(err)
		}
		if entry != textparse.EntrySeries {
			continue
		}
		_, _, value := parser.Series()
		var lset labels.Labels
		parser.Labels(&lset)
		s := sample{Name: lset.Get(labels.MetricName), Labels: map[string]string{}, Value: value}
		lset.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				s.Labels[l.Name] = l.Value
			}
		})
		var ex exemplar.Exemplar
		if parser.Exemplar(&ex) {
			s.Exemplar = &sampleExemplar{Labels: ex.Labels.Map(), Value: ex.Value}
		}
		if err := out.Encode(s); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "metrics-parse:", err)
	os.Exit(1)
}
