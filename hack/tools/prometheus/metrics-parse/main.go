// metrics-parse reads a metrics exposition on stdin and parses it with the parser Prometheus
// itself uses when scraping, chosen by the Content-Type given as the only argument. It prints
// every sample as a JSON line {"name", "labels", "value", "exemplar"?} and exits 1 at the first parse error,
// so tests judge the operator's /metrics by Prometheus's rules, not by a regular expression. NaN and ±Inf
// are valid sample values that JSON has no number for: they are written as the strings "NaN", "Infinity"
// and "-Infinity", which JavaScript's Number() reads back.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

type sample struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Value    value             `json:"value"`
	Exemplar *sampleExemplar   `json:"exemplar,omitempty"`
}

type sampleExemplar struct {
	Labels map[string]string `json:"labels"`
	Value  value             `json:"value"`
}

type value float64

func (v value) MarshalJSON() ([]byte, error) {
	f := float64(v)
	switch {
	case math.IsNaN(f):
		return []byte(`"NaN"`), nil
	case math.IsInf(f, 1):
		return []byte(`"Infinity"`), nil
	case math.IsInf(f, -1):
		return []byte(`"-Infinity"`), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
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
		_, _, v := parser.Series()
		var lset labels.Labels
		parser.Labels(&lset)
		s := sample{Name: lset.Get(labels.MetricName), Labels: map[string]string{}, Value: value(v)}
		lset.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				s.Labels[l.Name] = l.Value
			}
		})
		var ex exemplar.Exemplar
		if parser.Exemplar(&ex) {
			s.Exemplar = &sampleExemplar{Labels: ex.Labels.Map(), Value: value(ex.Value)}
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
