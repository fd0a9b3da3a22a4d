// expect: check_trainer_argument<int>.*argument is not a tessera policy
#include <tessera/trainer.hpp>
tessera::Trainer<tessera::DataSplit<tessera::Random>, int> trainer({}, tessera::optim::sgd(0.1));
int main() {}
